from modelsync.entry import main

main()
