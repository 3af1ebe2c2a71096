"""The search for the optimum: the strategy space, the outer enumeration with its bounds, the
inner solves, the brute-force referee of small spaces and the reasons an instance is infeasible."""
