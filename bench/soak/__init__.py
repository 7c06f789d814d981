"""`python -m bench soak`: an hour (or more) of simulated speech through a whole room session, faster than
real time, sampling memory, tasks and every long-lived container (`run`)."""
