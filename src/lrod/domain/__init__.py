"""The job model: plain data and rules. Imports neither grpc nor SQLAlchemy."""
