"""Sans-IO ICE: candidates, SDP, priorities, candidate pairs, the check list and the ICE session."""
