from selfreward.cli import main

# Guarded: vLLM's worker processes may re-import the main module (spawn), and must not start a second run.
if __name__ == "__main__":
    raise SystemExit(main())
