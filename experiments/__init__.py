"""What belongs to a source checkout of hedgejax: benchmarks, their baselines, accuracy and
bit-identity studies, and their committed results (experiments/results/).

The ten experiments users run (`hedgejax experiment NAME`) are part of the installed
package: hedgejax/experiments/.
"""
