from refundwatch.cli import main

main()
