"""The name and format tag of the file ``himari evaluate`` writes into its directory, in one place:
the runner writes it, ``--prior-trials`` and ``himari report`` read it (this module sits in the
lower layer so that both sides may import it without the report's plotting)."""

EVALUATION_RESULT = "evaluation.json"
EVALUATION_FORMAT = "himari-evaluation"
