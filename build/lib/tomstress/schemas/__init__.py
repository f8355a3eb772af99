"""JSON Schemas of the files tom-stress writes, shipped as package data."""
