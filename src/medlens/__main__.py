from medlens.cli import main

main()
