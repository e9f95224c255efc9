"""The claims the test provider asserts: e-mail, whether it verified it, and a preferred user name."""

from oauth2_provider.oauth2_validators import OAuth2Validator

# A provider-side user in this group has an e-mail the provider did not verify (email_verified: false).
UNVERIFIED_GROUP = "unverified-email"


class Validator(OAuth2Validator):
    def get_additional_claims(self, request):
        user = request.user
        return {
            "email": user.email,
            "email_verified": not user.groups.filter(name=UNVERIFIED_GROUP).exists(),
            "preferred_username": user.username,
            "name": user.get_full_name() or user.username,
        }
