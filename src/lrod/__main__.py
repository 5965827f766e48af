from lrod.cli import main

main(prog_name="lrod")
