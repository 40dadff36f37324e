"""Hand-written rows in the published formats of SAFIM and SantaCoder-FIM, and a small source tree for `repo`.

SAFIM rows follow the files of github.com/gonglinyuan/safim: `unit_tests` is a JSON string (the authors' loader
calls `json.loads` on it) holding `[{"input": stdin, "output": [accepted stdout, ...]}]`, "[]" for the api split;
the block middle starts after the cursor line's indentation and carries the full indentation of its later lines.
SantaCoder-FIM rows follow `bigcode/santacoder-fim-task` (languages `py`, `js`, `java`).
"""

from __future__ import annotations

import json

_A_PLUS_B = "t = int(input())\nfor _ in range(t):\n    {{completion}}\n"
_SUM_LOOP = (
    "n = int(input())\nxs = list(map(int, input().split()))\ntotal = 0\n"
    "for {{completion}}\n    total += x\nprint(total)\n"
)
_CPP = """#include <iostream>
using namespace std;

int main() {
    int t;
    cin >> t;
    for (int i = 0; i < t; i++) {
        {{completion}}
    }
    return 0;
}
"""
_JAVA = """import java.util.Scanner;

public class Main {
    public static void main(String[] args) {
        Scanner sc = new Scanner(System.in);
        int t = sc.nextInt();
        for (int i = 0; i < t; i++) {
            {{completion}}
        }
    }
}
"""
_TESTS_A_PLUS_B = json.dumps([{"input": "2\n1 2\n3 4\n", "output": ["3\n7"]}, {"input": "1\n-5 5\n", "output": ["0"]}])

SAFIM_ROWS: dict[str, list[dict[str, str]]] = {
    "block": [
        {
            "task_id": "block_completion_000001",
            "lang": "python",
            "prompt": "Complete the code in python to solve this programming problem: ...",
            "eval_prompt": _A_PLUS_B,
            "ground_truth": "a, b = map(int, input().split())\n    print(a + b)",
            "unit_tests": _TESTS_A_PLUS_B,
        },
        {
            "task_id": "block_completion_000002",
            "lang": "cpp",
            "prompt": "Complete the code in cpp to solve this programming problem: ...",
            "eval_prompt": _CPP,
            "ground_truth": "int a, b;\n        cin >> a >> b;\n        cout << a + b << endl;",
            "unit_tests": _TESTS_A_PLUS_B,
        },
        {
            "task_id": "block_completion_000003",
            "lang": "java",
            "prompt": "Complete the code in java to solve this programming problem: ...",
            "eval_prompt": _JAVA,
            "ground_truth": (
                "int a = sc.nextInt();\n            int b = sc.nextInt();\n            System.out.println(a + b);"
            ),
            "unit_tests": _TESTS_A_PLUS_B,
        },
    ],
    "control": [
        {
            "task_id": "control_completion_000001",
            "lang": "python",
            "prompt": "Complete the code in python to solve this programming problem: ...",
            "eval_prompt": _SUM_LOOP,
            "ground_truth": "x in xs:",
            "unit_tests": json.dumps([{"input": "3\n1 2 3\n", "output": ["6"]}]),
        },
    ],
    "api": [
        {
            "task_id": "api_completion_000001",
            "lang": "python",
            "prompt": "Complete the code in python: ...",
            "eval_prompt": (
                "import numpy as np\n\nn = 10\n# Create an n by n array of ones\na = {{completion}}\nprint(a)\n"
            ),
            "ground_truth": "np.ones((n, n), dtype=int)",
            "unit_tests": "[]",
        },
    ],
}

SANTACODER_ROWS: list[dict[str, str]] = [
    {
        "name": "HumanEval_0_fim",
        "language": "py",
        "prompt": "def add(a, b):\n    total = a + b\n",
        "suffix": "\n\nprint(add(1, 2))\n",
        "canonical_solution": "    return total",
        "tests": "assert add(1, 2) == 3",
    },
    {
        "name": "HumanEval_1_fim",
        "language": "js",
        "prompt": "function square(x) {\n",
        "suffix": "\n}\n",
        "canonical_solution": "  return x * x;",
        "tests": "",
    },
    {
        "name": "HumanEval_2_fim",
        "language": "java",
        "prompt": "class A {\n    int twice(int x) {\n        return ",
        "suffix": ";\n    }\n}\n",
        "canonical_solution": "2 * x",
        "tests": "",
    },
]

REPO_FILES: dict[str, str] = {
    "pkg/geometry.py": (
        "import math\n\n\n"
        "def area(radius):\n    squared = radius * radius\n    return math.pi * squared\n\n\n"
        "def perimeter(radius):\n    diameter = 2 * radius\n    return math.pi * diameter\n\n\n"
        "class Point:\n    def __init__(self, x, y):\n        self.x = x\n        self.y = y\n\n"
        "    def norm(self):\n        return math.hypot(self.x, self.y)\n"
    ),
    "web/app.js": (
        "function greet(name) {\n  const message = 'hello ' + name;\n  return message;\n}\n\n"
        "function total(items) {\n  let sum = 0;\n  for (const item of items) {\n    sum += item.price;\n  }\n"
        "  return sum;\n}\n"
    ),
}
