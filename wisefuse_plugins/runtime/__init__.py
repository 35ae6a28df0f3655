"""Runtime: the Lambda handler that runs any plan unit, the data store, and the backends."""
