from benchmarks.ringless.run import main

main()
