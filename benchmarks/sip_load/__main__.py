from benchmarks.sip_load.run import main

main()
