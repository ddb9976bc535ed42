"""Everything that writes studies and ratings: a study's lifecycle, raters, assignments, judgments, quality control.

A study goes draft → generating → open → closed. Raters join an open study through its link (anonymously or with
their crowd platform's id); each item they are served is an Assignment that records what was displayed (which
model on the left, the image order). A submitted comparison becomes one Judgment per question, converted from what
the rater saw (left / tie / right) to model space (A / tie / B, A being the comparison's model_a); a submitted gold
trial or practice item becomes ControlAnswers, never Judgments.

Serving is safe under concurrency: a comparison's slots are a counter (Comparison.n_assigned) that one UPDATE takes
from, picking the row with SELECT … FOR UPDATE SKIP LOCKED on PostgreSQL, so no comparison goes to more raters than
the study wants and raters arriving together do not queue behind one row. A rater's own requests are serialised by
locking their row, so two tabs see the same item. An assignment left unanswered past the study's timeout is
reclaimed: its slot goes back to the pool. Submitting is idempotent on the assignment key: the same answers again
are a success that records nothing, different ones a conflict.
"""
