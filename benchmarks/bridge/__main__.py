from benchmarks.bridge.run import main

main()
