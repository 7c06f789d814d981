"""`python -m bench soak`: an hour (or more) of simulated speech through a whole room session, faster than
real time. The run and the command (`run`), its fake providers (`fakes`), the speakers and the stand-ins for
real time (`speakers`), what is sampled (`sampling`), the result and what is printed (`report`)."""
