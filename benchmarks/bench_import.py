"""`import cnnviz_widgets` time vs `import torch, torchvision`, each in fresh processes, interleaved.

Run: .venv/bin/python benchmarks/bench_import.py
"""
import statistics
import subprocess
import sys

CASES = {
    "import torch, torchvision": "import torch, torchvision",
    "import cnnviz_widgets": "import cnnviz_widgets",
    "import cnnviz_widgets; cw.load_model('shapes')": "import cnnviz_widgets as cw; cw.load_model('shapes', device='cpu')",
    "import cnnviz_widgets; cw.FilterGrid(shapes)": "import cnnviz_widgets as cw; cw.FilterGrid(cw.load_model('shapes', device='cpu'))",
}
REPS = 5


def timed(code: str) -> float:
    prog = f"import time; t = time.perf_counter(); {code}; print(time.perf_counter() - t)"
    return float(subprocess.run([sys.executable, "-c", prog], check=True, capture_output=True, text=True).stdout)


def main():
    times = {name: [] for name in CASES}
    for _ in range(REPS):  # interleaved: A B C A B C ...
        for name, code in CASES.items():
            times[name].append(timed(code))
    import torch
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, {REPS} reps, fresh process each")
    print("| what | median s | min | max |\n|---|---|---|---|")
    for name, values in times.items():
        print(f"| `{name}` | {statistics.median(values):.3f} | {min(values):.3f} | {max(values):.3f} |")


if __name__ == "__main__":
    main()
