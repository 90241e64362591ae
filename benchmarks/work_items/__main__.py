from benchmarks.work_items.run import main

main()
