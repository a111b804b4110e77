"""What each `selfreward` command does, apart from parsing its arguments (cli.py). Commands may drive the pipeline
and the stages; the library modules they call never do."""
