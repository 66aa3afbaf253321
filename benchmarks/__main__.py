"""python -m benchmarks NAME [args]: run one benchmark (see README for the latest figures)."""
import sys

BENCHMARKS = ("sampling", "autoregressive", "frames", "vae_decode", "post", "train_step", "data",
              "gpu_dit", "scan_layers", "sequence_parallel", "train_scale", "peers",
              "stream_memory", "train_cost", "wan", "fast")


def main() -> None:
  if len(sys.argv) < 2 or sys.argv[1] not in BENCHMARKS:
    sys.exit(f"usage: python -m benchmarks {{{'|'.join(BENCHMARKS)}}} [args]")
  name = sys.argv[1]
  module = __import__(f"benchmarks.{name}", fromlist=["run"])
  module.run(sys.argv[2:])


if __name__ == "__main__":
  main()
