from biaslab.cli import app

app(prog_name="biaslab")
