// The history model (events, runs, failures, journal configuration) is part of what users of
// `import Durable` work with; re-export it so that one import is enough.
@_exported public import DurableJournal
