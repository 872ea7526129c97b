"""The read-only JSON API under ``/api/v1/lead-scoring`` (plus the rescore queue).

The endpoints that read the database are ``async def`` and hand their blocking work to the
thread pool in one hop: FastAPI runs a plain ``def`` endpoint in the thread pool and then its
response validation in a second hop (and each plain ``def`` dependency in another).
"""

from typing import Annotated, Literal

import sqlalchemy as sa
from fastapi import APIRouter, Depends, HTTPException, Path, Query, Request, Security
from fastapi.security import APIKeyHeader
from starlette.concurrency import run_in_threadpool

from lead_scoring_assets.api.cursor import BadCursor
from lead_scoring_assets.api.dagster_runs import (
    DagsterUnavailable,
    RunNotFound,
    export_config,
)
from lead_scoring_assets.api.models import (
    Analytics,
    CampaignDetail,
    CampaignList,
    ContactPage,
    ContactTotal,
    Error,
    ExportRequest,
    ExportRun,
    ForgetRequest,
    ForgetResult,
    KeyRole,
    ProofList,
    QueueEntry,
    RescoreStatus,
    ScoreCard,
    Tier,
)
from lead_scoring_assets.api.queries import NotFound, ScoreReader
from lead_scoring_assets.campaigns.results import (
    DEFAULT_COST_PER_MESSAGE,
    DEFAULT_VALUE_PER_CONVERSION,
)
from lead_scoring_assets.campaigns.segment_export import export_dir
from lead_scoring_assets.consent.forget import ForgetBusy, forget
from lead_scoring_assets.db.database import Database
from lead_scoring_assets.db.errors import insufficient_privilege
from lead_scoring_assets.db.writer_lock import LockBusy

CampaignId = Annotated[int, Path(ge=-(2**63), le=2**63 - 1, description="campaigns.id")]
CostPerMessage = Annotated[
    float,
    Query(
        ge=0,
        le=1_000,
        allow_inf_nan=False,
        description="pesos per message sent, for campaigns without their own",
    ),
]
ValuePerConversion = Annotated[
    float,
    Query(
        ge=0,
        le=10_000_000,
        allow_inf_nan=False,
        description="pesos per conversion, for campaigns without their own",
    ),
]
Sort = Literal["score", "conversion", "uplift"]
State = Annotated[str | None, Query(min_length=1, max_length=60, description="any spelling")]
MinScore = Annotated[int | None, Query(ge=0, le=100)]
Contactable = Annotated[
    bool,
    Query(
        description="true: only contacts that may be messaged (no suppression in force, no "
        "unprocessed opt-out reply, a readable number)"
    ),
]
ContactId = Annotated[int, Path(ge=-(2**63), le=2**63 - 1, description="contacts.id")]
ERRORS = {code: {"model": Error} for code in (400, 401, 404, 422)}
_key_header = APIKeyHeader(
    name="X-API-Key",
    auto_error=False,
    description="A key of LEAD_SCORING_API_KEYS or LEAD_SCORING_ADMIN_KEYS",
)


async def _role(request: Request, key: Annotated[str | None, Security(_key_header)]) -> str:
    """The caller's role."""
    role = request.app.state.keys.role(key)
    if role is None:
        raise HTTPException(401, "missing or invalid API key (header X-API-Key)")
    return role


async def _admin(role: Annotated[str, Depends(_role)]) -> None:
    if role != "admin":
        raise HTTPException(403, "this key may read but not rescore; use an admin key")


async def _known_parameters(request: Request) -> None:
    """A misspelt filter (``teir=HIGH``) is an error, not silently a list of everyone; the
    answer names the known parameters, never the names sent."""
    known = {p.alias for p in request.scope["route"].dependant.query_params}
    if set(request.query_params) - known:
        raise HTTPException(
            422, f"unknown query parameter name(s); known: {', '.join(sorted(known)) or 'none'}"
        )


async def _reader(request: Request) -> ScoreReader:
    return request.app.state.reader


Reader = Annotated[ScoreReader, Depends(_reader)]
router = APIRouter(
    prefix="/api/v1/lead-scoring",
    tags=["lead scoring"],
    dependencies=[Depends(_role), Depends(_known_parameters)],
    responses=ERRORS,
)


@router.get("/contacts/total", response_model=ContactTotal)
async def count_contacts(
    reader: Reader,
    tier: Tier | None = None,
    state: State = None,
    min_score: MinScore = None,
    contactable: Contactable = False,
) -> dict:
    """How many scored contacts match the list's filters: the first page's total on its own.
    It reads every matching contact (seconds at 10M contacts, where a page takes
    milliseconds), so the dashboard shows the page first and the total when it comes."""
    found = await run_in_threadpool(
        reader.total, tier.value if tier else None, state, min_score, contactable
    )
    return {"total": found}


@router.get("/contacts/{contact_id}", response_model=ScoreCard)
async def contact_score_card(contact_id: ContactId, reader: Reader) -> dict:
    """A contact's score card."""
    return await run_in_threadpool(reader.score_card, contact_id)


@router.get("/lookup", response_model=ScoreCard)
async def lookup_by_phone(
    reader: Reader,
    phone: Annotated[
        str,
        Query(
            min_length=1,
            max_length=40,
            pattern=r"^[0-9+() .\-]+$",
            description="any Mexican format: +52…, 10 digits, spaces",
        ),
    ],
) -> dict:
    """The score card of the contact with this phone number."""
    return await run_in_threadpool(reader.score_card_by_phone, phone)


@router.get("/contacts", response_model=ContactPage)
async def list_contacts(
    request: Request,
    reader: Reader,
    tier: Tier | None = None,
    state: State = None,
    min_score: MinScore = None,
    cursor: Annotated[
        str | None,
        Query(min_length=1, max_length=200, description="next_cursor of the previous page"),
    ] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    contactable: Contactable = False,
    sort: Annotated[
        Sort,
        Query(
            description="score (the default), conversion (probability) or uplift; contacts "
            "without the value come last"
        ),
    ] = "score",
    total: Annotated[
        bool,
        Query(
            description="false: the first page without its total (null), at once; "
            "GET /contacts/total counts on its own"
        ),
    ] = True,
) -> dict:
    """Scored contacts best first by ``sort`` (score, conversion probability or uplift; then
    contact id, both descending), a keyset page at a time, with the total for the filters on
    the first page; each marked do_not_contact with its suppression reasons."""
    after = None
    if cursor:
        *after, cursor_sort = request.app.state.cursors.decode(cursor)
        if cursor_sort != sort:
            raise BadCursor("this cursor belongs to another sort; begin again without a cursor")
    page = await run_in_threadpool(
        reader.page,
        tier.value if tier else None,
        state,
        min_score,
        after,
        limit,
        contactable,
        sort,
        total,
    )
    return {
        "items": page.rows,
        "total": page.total,
        "next_cursor": request.app.state.cursors.encode(*page.last_key, sort)
        if page.last_key
        else None,
    }


@router.get("/analytics", response_model=Analytics)
async def analytics(reader: Reader) -> dict:
    """The latest analytics run's figures and the history of its headline numbers."""
    figures = await run_in_threadpool(reader.analytics)
    if figures is None:
        raise NotFound("no analytics run yet: materialise lead_scoring_analytics")
    return figures


@router.get("/campaigns", response_model=CampaignList)
async def list_campaigns(
    reader: Reader,
    cost_per_message: CostPerMessage = DEFAULT_COST_PER_MESSAGE,
    value_per_conversion: ValuePerConversion = DEFAULT_VALUE_PER_CONVERSION,
) -> dict:
    """Every campaign with outcome rows, newest first: both arms and, with a control group,
    the incremental conversions, rate and profit with their 95 % intervals."""
    found = await run_in_threadpool(reader.campaigns, None, cost_per_message, value_per_conversion)
    return {"items": [{k: v for k, v in c.items() if k != "deciles"} for c in found]}


@router.get("/campaigns/{campaign_id}", response_model=CampaignDetail)
async def campaign(
    campaign_id: CampaignId,
    reader: Reader,
    cost_per_message: CostPerMessage = DEFAULT_COST_PER_MESSAGE,
    value_per_conversion: ValuePerConversion = DEFAULT_VALUE_PER_CONVERSION,
) -> dict:
    """One campaign's results, with the same per probability decile."""
    found = await run_in_threadpool(
        reader.campaigns, campaign_id, cost_per_message, value_per_conversion
    )
    if not found:
        raise NotFound("no campaign with this id and outcome rows")
    return found[0]


@router.get("/proof", response_model=ProofList)
async def proof(reader: Reader) -> dict:
    """Proof the score pays: each campaign with outcome rows, latest first, with its conversion
    rate per quality tier and per probability decile and its results against control."""
    return {"items": await run_in_threadpool(reader.proof)}


@router.post(
    "/contacts/{contact_id}/rescore",
    response_model=QueueEntry,
    status_code=202,
    dependencies=[Depends(_admin)],
    responses={403: {"model": Error}},
)
async def rescore(contact_id: ContactId, reader: Reader) -> dict:
    """Queue the contact for incremental scoring at top priority (10)."""
    return await run_in_threadpool(reader.enqueue, contact_id)


@router.get("/contacts/{contact_id}/rescore", response_model=RescoreStatus)
async def rescore_status(contact_id: ContactId, reader: Reader) -> dict:
    """Whether the contact still waits in the rescoring queue, and whether the queue is being
    processed (stalled: its next entry has waited more than 5 minutes)."""
    return await run_in_threadpool(reader.rescore_status, contact_id)


@router.get("/key", response_model=KeyRole)
async def key_role(role: Annotated[str, Depends(_role)]) -> dict:
    """What the key sent may do (the dashboard shows the admin actions to admin keys)."""
    return {"role": role}


DAGSTER_ERRORS = {403: {"model": Error}, 503: {"model": Error}}
RunId = Annotated[str, Path(pattern=r"^[0-9a-f-]{36}$", description="Dagster's run id")]


@router.post(
    "/exports",
    response_model=ExportRun,
    status_code=202,
    dependencies=[Depends(_admin)],
    responses=DAGSTER_ERRORS,
)
def export_segment(body: ExportRequest, request: Request) -> dict:
    """Launch campaign_export_job with the list's filters through Dagster's GraphQL API (503
    when no Dagster webserver is configured or it does not answer)."""
    try:
        return request.app.state.dagster.launch_export(
            export_config(
                body.tier.value if body.tier else None, body.state, body.min_score, body.sort
            ),
            {"lead_scoring/launched_by": "dashboard"},
        )
    except DagsterUnavailable as error:
        raise HTTPException(503, str(error)) from None


@router.get(
    "/exports/{run_id}",
    response_model=ExportRun,
    dependencies=[Depends(_admin)],
    responses=DAGSTER_ERRORS,
)
def export_status(run_id: RunId, request: Request) -> dict:
    """The export run's status in Dagster and its address in the Dagster UI."""
    try:
        return request.app.state.dagster.status(run_id)
    except RunNotFound as error:
        raise NotFound(str(error)) from None
    except DagsterUnavailable as error:
        raise HTTPException(503, str(error)) from None


@router.post(
    "/forget",
    response_model=ForgetResult,
    dependencies=[Depends(_admin)],
    responses={403: {"model": Error}, 409: {"model": Error}, 503: {"model": Error}},
)
def forget_number(body: ForgetRequest, reader: Reader) -> dict:
    """ARCO cancellation: delete every row of the person with this number, record its arco
    suppression, and name the export files that still hold it (409 while a rescoring holds the
    rows: nothing deleted, ask again later; 503 when the API's database role may not delete)."""
    # a transaction of its own: the API's engine runs each statement in autocommit
    database = Database(reader.database.url.render_as_string(hide_password=False))
    folder = export_dir()
    try:
        report = forget(database, body.phone, folder)
    except (ForgetBusy, LockBusy) as error:
        raise HTTPException(409, str(error)) from None
    except sa.exc.DBAPIError as error:
        if not insufficient_privilege(error):
            raise
        raise HTTPException(
            503,
            "the API's database role may not delete the person's rows "
            "(nothing was deleted): run 'lead-scoring forget' with the "
            "pipeline's role, or serve the admin API with a role that may "
            "delete (docs/arco.md)",
        ) from None
    finally:
        database.dispose()
    return {
        "masked_phone": report.masked_phone,
        "contacts": report.contacts,
        "deleted": report.deleted,
        "suppression_added": report.suppression_added,
        "campaigns_counted": report.campaigns_counted,
        "files": [str(path.relative_to(folder)) for path in report.files],
    }
