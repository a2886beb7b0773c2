"""Tools beside the pipeline: the source simulator and the demo (simulate/), and the SBA
Paycheck Protection Program deliveries (ppp/). No stage imports them."""
