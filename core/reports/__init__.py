"""Reports: training reports, analytics, robustness, domain reports, HTML and plots."""
