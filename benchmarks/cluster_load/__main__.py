from benchmarks.cluster_load.run import main

main()
