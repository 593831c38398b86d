"""Report: report.json, report.html, plots and the model card."""
