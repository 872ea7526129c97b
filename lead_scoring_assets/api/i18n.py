"""The dashboard's labels: Spanish by default, English with ``?lang=en``; every text the pages
show, including platform, state and conversion-reason names (a key missing here shows as a
marked gap the browser test finds)."""

from lead_scoring_assets.geography.states import CANONICAL_STATES

LABELS: dict[str, dict[str, str]] = {
    "es": {
        "lang": "es", "locale": "es-MX", "other_lang": "en", "other_lang_name": "English",
        "title": "Puntuación de leads", "nav_contacts": "Contactos", "nav_analytics": "Analítica",
        "api_key": "Clave de API", "save": "Guardar", "logout": "Cambiar clave",
        "key_needed": "Escriba su clave de API para ver los datos.",
        "search_phone": "Buscar por teléfono", "search": "Buscar", "tier": "Nivel",
        "all_tiers": "Todos", "state": "Estado", "min_score": "Puntuación mínima",
        "filter": "Filtrar", "contact": "Contacto", "phone": "Teléfono", "score": "Puntuación",
        "confidence": "Confianza", "platforms": "Plataformas", "last_update": "Última actualización",
        "more": "Más resultados", "none": "Sin resultados", "open": "Ver",
        "card_title": "Tarjeta de puntuación", "platform_scores": "Puntos por plataforma",
        "before_quality": "antes de calidad", "quality_factors": "Factores de calidad",
        "multiplier": "Multiplicador de calidad", "bonus": "Bonificación",
        "business_accounts": "Cuentas de negocio", "premium_accounts": "Cuentas premium",
        "trend": "Tendencia", "improving": "Mejorando", "declining": "Bajando",
        "steady": "Estable", "history": "Últimos cambios", "ml_score": "Puntuación ML",
        "no_ml": "Sin puntuación ML todavía", "conversion_score": "Probabilidad de conversión",
        "no_conversion": "Sin probabilidad de conversión todavía", "decile": "decil",
        "calculate": "Calcular", "queued": "En cola para recalcular (prioridad 10)",
        "forbidden": "Su clave no puede recalcular", "calculated": "Calculado",
        "method": "Método", "location": "Ubicación",
        "other_version": "Calculada con {version}, no con la versión actual {current}: "
        "desglose según la configuración de {version}. Se recalcula en el próximo recálculo.",
        "other_version_stored": "Calculada con {version}, no con la versión actual {current}: "
        "solo los valores guardados (este servidor no conoce la configuración de {version}). "
        "Se recalcula en el próximo recálculo.",
        "geographic_consistency": "Consistencia geográfica", "account_age": "Antigüedad",
        "profile_completeness": "Perfil completo", "validation_recency": "Validación reciente",
        "platform_count": "Número de plataformas", "synergy": "Sinergias", "business": "Negocio",
        "premium": "Premium", "total": "Total",
        "tier_distribution": "Distribución por nivel",
        "score_distribution": "Distribución de puntuaciones",
        "platform_success": "Éxito de validación por plataforma", "by_state": "Por estado",
        "history_chart": "Historial de ejecuciones", "contacts": "Contactos",
        "premium_leads": "Leads premium", "average_score": "Puntuación media",
        "validated_contacts": "Contactos validados",
        "multi_platform_contacts": "Contactos multiplataforma", "top_leads": "Leads Premium y Alto",
        "success_rate": "Tasa de éxito", "computed_at": "Calculado el",
        "no_analytics": "Aún no hay analítica: materialice lead_scoring_analytics",
        "PREMIUM": "Premium", "HIGH": "Alto", "MEDIUM": "Medio", "LOW": "Bajo", "POOR": "Pobre",
        "UNKNOWN": "Desconocido",
        "do_not_contact": "No contactar", "contactable_only": "Solo contactables",
        "reason_opt_out": "pidió la baja", "reason_repus": "inscrito en el REPUS",
        "reason_hard_bounce": "rebote permanente", "reason_arco": "cancelación ARCO",
        "reason_manual": "bloqueo manual", "reason_unreadable_phone": "teléfono ilegible",
        "nav_campaigns": "Campañas", "campaign": "Campaña", "sent": "Enviada",
        "target_arm": "Grupo objetivo", "control_arm": "Grupo de control",
        "incremental_conversions": "Conversiones incrementales",
        "incremental_profit": "Utilidad incremental", "return_per_peso": "Retorno por peso",
        "incremental_rate": "Tasa incremental", "deciles": "Por decil de probabilidad",
        "no_control": "Sin grupo de control: solo conversiones",
        "window_open": "ventana de atribución abierta",
        "interval_note": "Conversiones / destinatarios (tasa). Entre corchetes, el intervalo "
        "de 95 % (Newcombe); utilidad en pesos, con los costos de la campaña o los "
        "predeterminados.",
        "no_campaigns": "Aún no hay campañas con resultados",
        "predicted_vs_measured": "Previsto vs medido",
        "predicted_note": "Campañas elegidas por uplift: lo que se esperaba al planearlas "
        "frente a lo medido contra el grupo de control, con sus intervalos de 95 %.",
        "expected_conversions": "Conversiones incrementales previstas",
        "measured_conversions": "Conversiones incrementales medidas",
        "expected_profit": "Utilidad prevista", "measured_profit": "Utilidad medida",
        "inside_interval": "¿Dentro de lo previsto?", "inside_yes": "Sí",
        "inside_no": "No", "not_measured": "Sin medición todavía",
        "no_predictions": "Ninguna campaña con resultados se planeó con una previsión",
        # reasons and proof (issue 24 points 4, 5, 9)
        "reasons_title": "Por qué esta probabilidad", "reasons_rest": "Todo lo demás",
        "reasons_note": "Efectos en log-odds frente al contacto promedio ({average}); "
        "sumados dan la diferencia.",
        "nav_proof": "Resultados por nivel", "proof_title": "¿La puntuación paga?",
        "proof_note": "Tasa de conversión de cada campaña por nivel y por decil de "
        "probabilidad, la más reciente primero. Entre corchetes, el intervalo de 95 % "
        "(Wilson); el lift compara con la tasa de toda la campaña.",
        "proof_by_tier": "Por nivel", "proof_by_decile": "Por decil de probabilidad",
        "proof_messages": "Conversiones / mensajes", "proof_rate": "Tasa", "proof_lift": "Lift",
        "proof_summary": "{sent} · {conversions} conversiones de {messages} mensajes ({rate})",
        "basis_at_send": "Nivel y decil registrados al enviar.",
        "basis_current": "Sin registro al enviar: nivel y decil actuales (retrospectivo).",
        "proof_control": "Frente al grupo de control: tasa incremental {rate}; conversiones "
        "incrementales {conversions}.",
        "proof_none": "Aún no hay campañas con resultados",
        "needs_two_runs": "Necesita 2 ejecuciones para mostrar una tendencia.",
        "skip": "Saltar al contenido", "details": "detalles",
        "error_key": "La clave de API no es válida: escríbala de nuevo.",
        "error_forbidden": "Su clave no permite esta acción.",
        "error_not_found": "No se encontró: el contacto no existe o aún no tiene puntuación.",
        "error_phone": "Ese número no es un teléfono mexicano válido.",
        "error_invalid": "La solicitud no es válida: revise los filtros.",
        "error_cursor": "La lista cambió desde que se abrió: vuelva a filtrar.",
        "error_busy": "El sistema está ocupado: inténtelo de nuevo en un momento.",
        "error_server": "Error del servidor: inténtelo más tarde.",
        "error_network": "No hay conexión con el servidor.",
        "error_unavailable": "El servicio no está disponible: inténtelo más tarde.",
        "export": "Exportar segmento", "export_status": "Exportación: {status}",
        "export_link": "Ver la ejecución en Dagster",
        "run_QUEUED": "en cola", "run_NOT_STARTED": "sin iniciar", "run_STARTING": "iniciando",
        "run_STARTED": "en curso", "run_SUCCESS": "terminada", "run_FAILURE": "fallida",
        "run_CANCELING": "cancelando", "run_CANCELED": "cancelada",
        "run_MANAGED": "gestionada fuera de Dagster",
        "no_analytics_yet": "Aún no hay analítica: materialice lead_scoring_analytics.",
        "sort": "Ordenar por", "sort_score": "Puntuación",
        "sort_conversion": "Probabilidad de conversión", "sort_uplift": "Uplift",
        "probability": "Probabilidad", "uplift": "Uplift",
        "total_for_filter": "{count} contactos con estos filtros",
        "pending": "En cola desde las {time}: esperando el recálculo…",
        "landed": "Nueva puntuación: {score}/100 ({tier}), calculada el {time}.",
        "not_queued": "Ya no está en la cola; la puntuación no cambió.",
        "stalled": "La cola no se está procesando: la siguiente entrada espera desde las "
        "{time} (más de 5 minutos). Avise al equipo de datos.",
        "state_blank": "Sin estado", "no_value": "—",
        "uplift_score": "Efecto del mensaje (uplift)",
        "uplift_points": "puntos de probabilidad de conversión si se le envía",
        "no_uplift": "Sin uplift: aún no hay un modelo de uplift campeón (hacen falta campañas "
        "con grupo de control); no se adivina",
    },
    "en": {
        "lang": "en", "locale": "es-MX", "other_lang": "es", "other_lang_name": "Español",
        "title": "Lead scoring", "nav_contacts": "Contacts", "nav_analytics": "Analytics",
        "api_key": "API key", "save": "Save", "logout": "Change key",
        "key_needed": "Enter your API key to see the data.",
        "search_phone": "Search by phone", "search": "Search", "tier": "Tier",
        "all_tiers": "All", "state": "State", "min_score": "Minimum score",
        "filter": "Filter", "contact": "Contact", "phone": "Phone", "score": "Score",
        "confidence": "Confidence", "platforms": "Platforms", "last_update": "Last update",
        "more": "More results", "none": "No results", "open": "Open",
        "card_title": "Score card", "platform_scores": "Points per platform",
        "before_quality": "before quality", "quality_factors": "Quality factors",
        "multiplier": "Quality multiplier", "bonus": "Bonus",
        "business_accounts": "Business accounts", "premium_accounts": "Premium accounts",
        "trend": "Trend", "improving": "Improving", "declining": "Declining",
        "steady": "Steady", "history": "Last changes", "ml_score": "ML score",
        "no_ml": "No ML score yet", "conversion_score": "Conversion probability",
        "no_conversion": "No conversion probability yet", "decile": "decile",
        "calculate": "Calculate", "queued": "Queued for rescoring (priority 10)",
        "forbidden": "Your key may not rescore", "calculated": "Calculated",
        "method": "Method", "location": "Location",
        "other_version": "Computed by {version}, not the current {current}: breakdown read "
        "with {version}'s configuration. Recomputed at the next rescoring.",
        "other_version_stored": "Computed by {version}, not the current {current}: stored "
        "values only (this server does not know {version}'s configuration). Recomputed at "
        "the next rescoring.",
        "geographic_consistency": "Geographic consistency", "account_age": "Account age",
        "profile_completeness": "Profile completeness", "validation_recency": "Validation recency",
        "platform_count": "Platform count", "synergy": "Synergies", "business": "Business",
        "premium": "Premium", "total": "Total",
        "tier_distribution": "Tier distribution", "score_distribution": "Score distribution",
        "platform_success": "Validation success per platform", "by_state": "By state",
        "history_chart": "Run history", "contacts": "Contacts", "premium_leads": "Premium leads",
        "average_score": "Average score", "validated_contacts": "Validated contacts",
        "multi_platform_contacts": "Multi-platform contacts", "top_leads": "Premium and High leads",
        "success_rate": "Success rate", "computed_at": "Computed at",
        "no_analytics": "No analytics yet: materialise lead_scoring_analytics",
        "PREMIUM": "Premium", "HIGH": "High", "MEDIUM": "Medium", "LOW": "Low", "POOR": "Poor",
        "UNKNOWN": "Unknown",
        "do_not_contact": "Do not contact", "contactable_only": "Contactable only",
        "reason_opt_out": "opted out", "reason_repus": "registered in REPUS",
        "reason_hard_bounce": "hard bounce", "reason_arco": "ARCO cancellation",
        "reason_manual": "manual block", "reason_unreadable_phone": "unreadable number",
        "nav_campaigns": "Campaigns", "campaign": "Campaign", "sent": "Sent",
        "target_arm": "Target group", "control_arm": "Control group",
        "incremental_conversions": "Incremental conversions",
        "incremental_profit": "Incremental profit", "return_per_peso": "Return per peso",
        "incremental_rate": "Incremental rate", "deciles": "Per probability decile",
        "no_control": "No control group: conversions only",
        "window_open": "attribution window open",
        "interval_note": "Conversions / recipients (rate). In brackets, the 95 % interval "
        "(Newcombe); profit in pesos, with the campaign's costs or the defaults.",
        "no_campaigns": "No campaign results yet",
        "predicted_vs_measured": "Predicted vs measured",
        "predicted_note": "Campaigns selected by uplift: what was expected when they were "
        "planned against what was measured against the control group, with 95 % intervals.",
        "expected_conversions": "Expected incremental conversions",
        "measured_conversions": "Measured incremental conversions",
        "expected_profit": "Expected profit", "measured_profit": "Measured profit",
        "inside_interval": "Within the expected range?", "inside_yes": "Yes",
        "inside_no": "No", "not_measured": "Not measured yet",
        "no_predictions": "No campaign with results was planned with an expectation",
        # reasons and proof (issue 24 points 4, 5, 9)
        "reasons_title": "Why this probability", "reasons_rest": "Everything else",
        "reasons_note": "Effects in log-odds against the average contact ({average}); they "
        "add up to the difference.",
        "nav_proof": "Results by tier", "proof_title": "Does the score pay?",
        "proof_note": "Each campaign's conversion rate per tier and per probability decile, "
        "the latest first. In brackets, the 95 % interval (Wilson); lift compares with the "
        "whole campaign's rate.",
        "proof_by_tier": "By tier", "proof_by_decile": "By probability decile",
        "proof_messages": "Conversions / messages", "proof_rate": "Rate", "proof_lift": "Lift",
        "proof_summary": "{sent} · {conversions} conversions of {messages} messages ({rate})",
        "basis_at_send": "Tier and decile recorded at the send.",
        "basis_current": "Not recorded at the send: current tier and decile (in hindsight).",
        "proof_control": "Against the control group: incremental rate {rate}; incremental "
        "conversions {conversions}.",
        "proof_none": "No campaign results yet",
        "needs_two_runs": "Needs 2 runs to show a trend.",
        "skip": "Skip to content", "details": "details",
        "error_key": "The API key is not valid: enter it again.",
        "error_forbidden": "Your key does not allow this action.",
        "error_not_found": "Not found: the contact does not exist or has no score yet.",
        "error_phone": "That number is not a valid Mexican phone number.",
        "error_invalid": "The request is not valid: check the filters.",
        "error_cursor": "The list changed since it was opened: filter again.",
        "error_busy": "The system is busy: try again in a moment.",
        "error_server": "Server error: try again later.",
        "error_network": "No connection to the server.",
        "error_unavailable": "The service is not available: try again later.",
        "export": "Export segment", "export_status": "Export: {status}",
        "export_link": "Open the run in Dagster",
        "run_QUEUED": "queued", "run_NOT_STARTED": "not started", "run_STARTING": "starting",
        "run_STARTED": "running", "run_SUCCESS": "done", "run_FAILURE": "failed",
        "run_CANCELING": "cancelling", "run_CANCELED": "cancelled",
        "run_MANAGED": "managed outside Dagster",
        "no_analytics_yet": "No analytics yet: materialise lead_scoring_analytics.",
        "sort": "Sort by", "sort_score": "Score",
        "sort_conversion": "Conversion probability", "sort_uplift": "Uplift",
        "probability": "Probability", "uplift": "Uplift",
        "total_for_filter": "{count} contacts match these filters",
        "pending": "Queued since {time}: waiting for the rescoring…",
        "landed": "New score: {score}/100 ({tier}), computed at {time}.",
        "not_queued": "No longer queued; the score did not change.",
        "stalled": "The queue is not being processed: its next entry has waited since {time} "
        "(over 5 minutes). Tell the data team.",
        "state_blank": "No state", "no_value": "—",
        "uplift_score": "Message effect (uplift)",
        "uplift_points": "points of conversion probability if messaged",
        "no_uplift": "No uplift: there is no uplift champion yet (it needs campaigns with a "
        "control group); no guess",
    },
}
"""Numbers and dates are formatted for Mexico (``es-MX``) in both languages."""
PLATFORM_NAMES = {"whatsapp": "WhatsApp", "instagram": "Instagram", "facebook": "Facebook",
                  "google": "Google", "apple": "Apple"}
STATE_NAMES = {
    "AGUASCALIENTES": "Aguascalientes", "BAJA CALIFORNIA": "Baja California",
    "BAJA CALIFORNIA SUR": "Baja California Sur", "CAMPECHE": "Campeche",
    "CHIAPAS": "Chiapas", "CHIHUAHUA": "Chihuahua", "CIUDAD DE MEXICO": "Ciudad de México",
    "COAHUILA": "Coahuila", "COLIMA": "Colima", "DURANGO": "Durango",
    "GUANAJUATO": "Guanajuato", "GUERRERO": "Guerrero", "HIDALGO": "Hidalgo",
    "JALISCO": "Jalisco", "MEXICO": "Estado de México", "MICHOACAN": "Michoacán",
    "MORELOS": "Morelos", "NAYARIT": "Nayarit", "NUEVO LEON": "Nuevo León",
    "OAXACA": "Oaxaca", "PUEBLA": "Puebla", "QUERETARO": "Querétaro",
    "QUINTANA ROO": "Quintana Roo", "SAN LUIS POTOSI": "San Luis Potosí",
    "SINALOA": "Sinaloa", "SONORA": "Sonora", "TABASCO": "Tabasco",
    "TAMAULIPAS": "Tamaulipas", "TLAXCALA": "Tlaxcala", "VERACRUZ": "Veracruz",
    "YUCATAN": "Yucatán", "ZACATECAS": "Zacatecas",
}
"""The canonical names (``geography/states.py``) as written in Mexico, in both languages but
two: English says Mexico City and State of Mexico."""
ENGLISH_STATE_NAMES = {**STATE_NAMES, "CIUDAD DE MEXICO": "Mexico City",
                       "MEXICO": "State of Mexico"}


def _names(states: dict[str, str]) -> dict[str, str]:
    """Labels ``platform_<name>`` and ``state_<canonical name>`` (every federal entity)."""
    return {**{f"platform_{k}": v for k, v in PLATFORM_NAMES.items()},
            **{f"state_{k}": states[k] for k in CANONICAL_STATES}}


LABELS["es"].update(_names(STATE_NAMES))
LABELS["en"].update(_names(ENGLISH_STATE_NAMES))


def labels_for(lang: str) -> dict[str, str]:
    return LABELS.get(lang, LABELS["es"])
