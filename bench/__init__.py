"""``make bench``: the load generator, the baseline server and the runner that compares them."""
