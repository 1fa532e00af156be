"""The audit API: the event history (``history``, ``GET /hub/api/events``) and one live feed per
process (``feed``, ``/hub/api/events/stream``)."""
