"""`python -m bench lag`: per-sentence lags, today's behaviour against the new one (issue 14): the lag math
on plain inputs (`lags`) and the workload that runs sessions and measures them (`workload`)."""
