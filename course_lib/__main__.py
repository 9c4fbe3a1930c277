import sys

from .cli import main  # the command line lives in course_lib/cli/

sys.exit(main())
