"""Every field of LiteLLM's request model for each admin route, with its check (validation.py).

Written from LiteLLM's litellm/proxy/_types.py: GenerateRequestBase / KeyRequestBase /
GenerateKeyRequest / UpdateKeyRequest / RegenerateKeyRequest, NewUserRequest / UpdateUserRequest,
TeamBase / NewTeamRequest / UpdateTeamRequest, BudgetNewRequest, NewCustomerRequest /
UpdateCustomerRequest, NewOrganizationRequest / LiteLLM_OrganizationTableUpdate, and the member
requests. Which of these Tally acts on is in docs/management-api.md; the rest are stored and
returned as given."""

from __future__ import annotations

from services.proxy.admin.validation import (
    ORG_ROLES,
    TEAM_ROLES,
    Checker,
    any_list,
    count,
    duration,
    flag,
    identifier,
    iso_time,
    json_object,
    members,
    metadata,
    money,
    one_of,
    password,
    str_list,
    text,
    user_teams,
)

_LIMIT_TYPE = one_of("guaranteed_throughput", "best_effort_throughput", "dynamic")
USER_ROLES = ("proxy_admin", "proxy_admin_viewer", "internal_user", "internal_user_viewer", "team", "customer")

# GenerateRequestBase: shared by keys and users.
_GENERATE_BASE: dict[str, Checker] = {
    "key_alias": identifier, "duration": duration, "models": str_list, "spend": money, "max_budget": money,
    "user_id": identifier, "team_id": identifier, "agent_id": identifier, "max_parallel_requests": count,
    "metadata": metadata, "tpm_limit": count, "rpm_limit": count, "budget_duration": duration,
    "allowed_cache_controls": any_list, "config": json_object, "permissions": json_object,
    "model_max_budget": json_object, "model_rpm_limit": json_object, "model_tpm_limit": json_object,
    "guardrails": str_list, "policies": str_list, "prompts": str_list, "blocked": flag, "aliases": json_object,
    "object_permission": json_object,
}
# KeyRequestBase
_KEY_BASE: dict[str, Checker] = {
    **_GENERATE_BASE, "key": text, "budget_id": identifier, "tags": str_list, "enforced_params": str_list,
    "allowed_routes": any_list, "allowed_passthrough_routes": any_list, "allowed_vector_store_indexes": any_list,
    "rpm_limit_type": _LIMIT_TYPE, "tpm_limit_type": _LIMIT_TYPE, "router_settings": json_object,
    "access_group_ids": str_list, "soft_budget": money,
}
KEY_GENERATE: dict[str, Checker] = {
    **_KEY_BASE, "send_invite_email": flag, "key_type": one_of("llm_api", "management", "read_only", "default"),
    "auto_rotate": flag, "rotation_interval": duration, "organization_id": identifier, "project_id": identifier,
}
KEY_UPDATE: dict[str, Checker] = {
    **KEY_GENERATE, "temp_budget_increase": money, "temp_budget_expiry": iso_time,
}
KEY_REGENERATE: dict[str, Checker] = {
    **KEY_GENERATE, "new_key": text, "new_master_key": text, "grace_period": duration,
}
KEY_DELETE: dict[str, Checker] = {"keys": str_list, "key_aliases": str_list}
KEY_BLOCK: dict[str, Checker] = {"key": text}

# NewUserRequest / UpdateUserRequest
_USER_FIELDS: dict[str, Checker] = {
    **_GENERATE_BASE, "user_email": identifier, "user_alias": identifier, "user_role": one_of(*USER_ROLES),
    "soft_budget": money, "password": password, "sso_user_id": identifier, "organizations": str_list,
}
USER_NEW: dict[str, Checker] = {**_USER_FIELDS, "teams": user_teams, "auto_create_key": flag, "send_invite_email": flag}
USER_UPDATE: dict[str, Checker] = {**_USER_FIELDS, "teams": user_teams}
USER_DELETE: dict[str, Checker] = {"user_ids": str_list}

# TeamBase / NewTeamRequest / UpdateTeamRequest
TEAM_NEW: dict[str, Checker] = {
    "team_alias": identifier, "team_id": identifier, "organization_id": identifier, "admins": any_list,
    "members": any_list, "members_with_roles": members(TEAM_ROLES, None), "team_member_permissions": str_list,
    "metadata": metadata, "tpm_limit": count, "rpm_limit": count, "max_parallel_requests": count,
    "max_budget": money, "soft_budget": money, "budget_duration": duration, "models": str_list, "blocked": flag,
    "router_settings": json_object, "access_group_ids": str_list, "model_aliases": json_object, "tags": any_list,
    "guardrails": str_list, "policies": str_list, "prompts": str_list, "object_permission": json_object,
    "allowed_passthrough_routes": any_list, "secret_manager_settings": json_object, "model_rpm_limit": json_object,
    "model_tpm_limit": json_object, "rpm_limit_type": _LIMIT_TYPE, "tpm_limit_type": _LIMIT_TYPE,
    "team_member_budget": money, "team_member_rpm_limit": count, "team_member_tpm_limit": count,
    "team_member_key_duration": duration, "team_member_budget_duration": duration,
    "allowed_vector_store_indexes": any_list, "enforced_batch_output_expires_after": json_object,
    "enforced_file_expires_after": json_object,
}
TEAM_UPDATE = TEAM_NEW
TEAM_DELETE: dict[str, Checker] = {"team_ids": str_list}
TEAM_BLOCK: dict[str, Checker] = {"team_id": identifier}
TEAM_MEMBER_ADD: dict[str, Checker] = {
    "team_id": identifier, "member": members(TEAM_ROLES, "user"), "max_budget_in_team": money,
}
TEAM_MEMBER_DELETE: dict[str, Checker] = {"team_id": identifier, "user_id": identifier, "user_email": identifier}
TEAM_MEMBER_UPDATE: dict[str, Checker] = {
    **TEAM_MEMBER_DELETE, "max_budget_in_team": money, "role": one_of(*TEAM_ROLES),
}

# BudgetNewRequest (also the budget part of customers and organizations)
BUDGET_FIELDS: dict[str, Checker] = {
    "budget_id": identifier, "max_budget": money, "soft_budget": money, "max_parallel_requests": count,
    "tpm_limit": count, "rpm_limit": count, "budget_duration": duration, "model_max_budget": json_object,
    "budget_reset_at": iso_time,
}
BUDGET_DELETE: dict[str, Checker] = {"id": identifier}
BUDGET_INFO: dict[str, Checker] = {"budgets": str_list}

# NewCustomerRequest / UpdateCustomerRequest
CUSTOMER_NEW: dict[str, Checker] = {
    **BUDGET_FIELDS, "user_id": identifier, "alias": identifier, "blocked": flag, "spend": money,
    "allowed_model_region": one_of("eu", "us"), "default_model": text, "object_permission": json_object,
    "metadata": metadata,
}
CUSTOMER_UPDATE = CUSTOMER_NEW
CUSTOMER_DELETE: dict[str, Checker] = {"user_ids": str_list}

# NewOrganizationRequest / LiteLLM_OrganizationTableUpdate, and the member requests
ORG_NEW: dict[str, Checker] = {
    **BUDGET_FIELDS, "organization_id": identifier, "organization_alias": identifier, "models": str_list,
    "metadata": metadata, "model_rpm_limit": json_object, "model_tpm_limit": json_object,
    "object_permission": json_object,
}
ORG_UPDATE: dict[str, Checker] = {**ORG_NEW, "spend": money, "updated_by": identifier}
ORG_DELETE: dict[str, Checker] = {"organization_ids": str_list}
ORG_MEMBER_ADD: dict[str, Checker] = {
    "organization_id": identifier, "member": members(ORG_ROLES, None), "max_budget_in_organization": money,
}
ORG_MEMBER_DELETE: dict[str, Checker] = {"organization_id": identifier, "user_id": identifier, "user_email": identifier}
ORG_MEMBER_UPDATE: dict[str, Checker] = {
    **ORG_MEMBER_DELETE, "role": one_of(*ORG_ROLES), "max_budget_in_organization": money,
}
