from benchmarks.amd.run import main

main()
