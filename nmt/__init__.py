"""Generated gRPC code for protos/nmt/v1 (make proto regenerates it; a test checks it is current)."""
