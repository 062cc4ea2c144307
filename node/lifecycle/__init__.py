"""What happens to a record after it is collected (DOMAIN §4-5, DESIGN §3; docs/lifecycle.md).

``calendar`` counts working days; ``disclosure`` computes disclosure windows and archives records
past them; ``objections`` is the 异议 state machine (pure), ``objection_store`` its tables and
``objection_service`` its I/O; ``repair`` runs 信用修复 requests; ``deletion`` removes a subject's
own commendations on request; ``measures`` names the list measures (联合奖惩) in force; ``validity`` the day basic information ended;
``revisions`` makes the signed revisions all of them store; ``desk`` builds them for one node.
Every change to a record is a new signed revision by the node that decides it
(docs/decisions/lifecycle-revisions.md); nothing stored is ever updated or deleted.
"""
