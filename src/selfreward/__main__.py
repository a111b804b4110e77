from selfreward.cli import main

raise SystemExit(main())
