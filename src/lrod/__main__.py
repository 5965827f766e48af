from lrod.cli import main

main()
