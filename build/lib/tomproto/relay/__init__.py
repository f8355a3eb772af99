"""tom-relay: the rendezvous and relay server (spec/protocol.md §8)."""
