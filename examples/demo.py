"""A small file to try completions on: `diffill complete examples/demo.py:LINE:COL`."""

import os


def list_python_files(root: str) -> list[str]:
    found = []
    for dirpath, _dirnames, filenames in os.walk(root):
        for name in filenames:
            if name.endswith(".py"):
                found.append(os.path.join(dirpath, name))
    return sorted(found)


def count_lines(path: str) -> int:
    with open(path, encoding="utf-8") as f:
        return sum(1 for _ in f)


if __name__ == "__main__":
    total = 0
    for path in list_python_files("."):
        total += 
    print(total)
