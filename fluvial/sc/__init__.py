"""The streaming controller (SC): topics, partitions and SPUs as spec + status; placement and elections."""
