from aptviz.cli import main

main()
