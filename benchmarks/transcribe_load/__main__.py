from benchmarks.transcribe_load.run import main

main()
