"""Print the API-docstring problems of tests/test_api_docs.py grouped by the file that defines each
object: ``python tests/api_docs_by_file.py lenses/nn.py lenses/losses.py`` (no argument: all files)."""

import inspect
import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).parent))
from test_api_docs import _problems, public_objects  # noqa: E402

ROOT = pathlib.Path(__file__).resolve().parents[1]


def main(files):
    wanted = {str((ROOT / f).resolve()) for f in files}
    seen, count = set(), 0
    for _, name, obj in public_objects():
        target = inspect.unwrap(obj.__func__ if hasattr(obj, "__func__") else obj)
        try:
            path = str(pathlib.Path(inspect.getsourcefile(target)).resolve())
        except TypeError:
            continue
        if wanted and path not in wanted:
            continue
        key = (path, getattr(target, "__qualname__", name))
        if key in seen:
            continue
        seen.add(key)
        for p in _problems(name, obj):
            count += 1
            print(f"{pathlib.Path(path).relative_to(ROOT)}: {p}")
    print(f"{count} problems")


if __name__ == "__main__":
    main(sys.argv[1:])
