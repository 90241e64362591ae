from benchmarks.registrar.run import main

main()
