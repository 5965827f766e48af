"""The gRPC front: servicers that validate, convert, call the manager, convert back."""
