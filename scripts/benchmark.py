"""Benchmarks (they print figures; they are not tests).

    python scripts/benchmark.py train [...]   training step: seconds/step, peak RSS, compile time
    python scripts/benchmark.py infer [...]   downscale / upscale of a large image, tiled and not
    python scripts/benchmark.py data  [...]   data pipeline: ms per sample
    python scripts/benchmark.py ops   [...]   DenseBlock convs, DenseBlock, Haar: MindSpore vs fast conv
    python scripts/benchmark.py crm   [...]   CRM step with IRN frozen: IRN down, JPEG, CRM update
    python scripts/benchmark.py precision      float32 CPU exp / sigmoid / tanh / sqrt vs float64
"""
import os
import runpy
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
TOOLS = {'train': 'bench_train.py', 'infer': 'bench_infer.py', 'data': 'bench_data.py',
         'ops': 'bench_ops.py', 'crm': 'bench_crm.py', 'precision': 'bench_precision.py'}

if __name__ == '__main__':
    if len(sys.argv) < 2 or sys.argv[1] not in TOOLS:
        print(__doc__.strip())
        sys.exit(2)
    script = os.path.join(HERE, TOOLS[sys.argv[1]])
    sys.argv = [script] + sys.argv[2:]
    sys.path.insert(0, os.path.dirname(HERE))
    runpy.run_path(script, run_name='__main__')
