from benchmarks.queue_pg.run import main

main()
