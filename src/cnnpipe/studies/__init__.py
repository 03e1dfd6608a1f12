"""Studies: the notes' questions as grids of DVC experiments, and a report of each.

spec.py reads a study file, queue.py drives DVC's queue, report.py writes the report and
run.py ties them together with the runs MLflow holds.

A study is a YAML file under studies/:

    question: What does the learning rate do to SGD training?
    grid:             # every combination is one experiment
      lr: [0.3, 0.1, 0.03, 0.01, 0.003]
    set:              # the same for every experiment (optional)
      epochs: 30

`cnnpipe study NAME` queues one `dvc exp run` per combination, with `tracking.study` set
to NAME so that each experiment's MLflow run is a child of the study's parent run, and
runs the queue on parallel workers. It then reads the runs back from MLflow and writes
reports/NAME/: curves.png (validation loss and accuracy per setting), results.csv and
results.md (final metrics), summary.md (the question and the best setting). An
experiment that already ran for this study on the same commit (its MLflow run says so) is
not run again, so running a study again trains nothing and only draws the report again.
"""
