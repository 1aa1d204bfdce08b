"""probeseg entry point. `python app.py` starts the web app; `python app.py --help` lists the commands."""

import sys

from cli.main import main

if __name__ == "__main__":
    sys.exit(main())
