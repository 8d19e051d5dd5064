"""Stream plumbing: the Faust app, topics, message records, codecs, broker and command line."""
