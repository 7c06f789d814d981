"""`python -m bench lag`: per-sentence lags, today's behaviour against the new one (issue 14): the lag math
on plain inputs (`lags`), the profiles and goals (`goals`), the sessions run and measured and the command
(`workload`), the table and picture (`report`)."""
